"""The build: a recipe in, an output folder out (MDS shards per source and split, the manifest,
the plan). Read `mixer.builder.orchestrate` first: it walks the steps, each in its own module.

The names below are imported on first use, not with the package: a build worker imports
`mixer.builder.task` and what a unit needs, not the whole build (rich, the decisions, the
records), which halves the imports every worker pays before its first unit.
"""

__all__ = ["Build", "Built", "build", "run_build"]


def __getattr__(name: str):
    if name in __all__:
        from mixer.builder import orchestrate

        return getattr(orchestrate, name)
    raise AttributeError(f"module 'mixer.builder' has no attribute {name!r}")
