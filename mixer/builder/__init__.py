"""The build: a recipe in, an output folder out (MDS shards per source and split, the manifest,
the plan). Read `mixer.builder.orchestrate` first: it walks the steps, each in its own module.
"""

from mixer.builder.orchestrate import Build, Built, build, run_build

__all__ = ["Build", "Built", "build", "run_build"]
