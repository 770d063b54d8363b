"""mixer: exact, resumable data mixtures for continued pre-training of LLMs.

The flow, and where each step lives (CONTRIBUTING.md has the reading order)::

    recipe.yaml -> Recipe -> work units -> documents -> token ids -> blocks -> MDS shards
                   recipe/   builder.units  builder.readers builder.worker builder.pack
                   (load,    builder.decide builder.text    builder.spill  builder.merge
                   keys,     builder.schedule builder.lines builder.tokenizer artifacts.shards
                   inputs,   builder.take_measure, builder.cut, builder.take_reuse (a take)
                   mixture,  builder.orchestrate: the steps in order, over one Build context
                   take)
                 manifest.json (artifacts.manifest) + plan.json (artifacts.planfile, plan)
                 -> StreamingMixture (serve.mixture over serve.cache, serve.shardfile,
                    serve.cache_limit, serve.positions, serve.buffers; resume states: serve.state)
                 -> MixerLoader (serve.loader) or the trainer's own DataLoader -> the trainer
                    (integrations.hf, integrations.litgpt: trainer-specific adapters)
                 -> mixer build's summary, mixer stats / inspect / verify (report)

Imports run with the flow, never in a cycle (tests/unit/test_layout.py). Leaves every stage may
import: ``errors`` (every user-facing exception), ``identity`` (the hashing), ``typed`` (checked
JSON records), ``syntax`` (sizes and source names), ``version``. The words (block, sample,
pass, take, cache limit, ...) are defined in docs/glossary.md.
"""

from mixer.version import __version__

__all__ = ["MixerLoader", "StreamingMixture", "__version__", "amend", "skip"]


def __getattr__(name: str):
    # Lazy: `import mixer` (the CLI, the build) must not import torch; trainers that ask for
    # StreamingMixture or MixerLoader already have it.
    if name == "StreamingMixture":
        from mixer.serve.mixture import StreamingMixture

        return StreamingMixture
    if name == "MixerLoader":
        from mixer.serve.loader import MixerLoader

        return MixerLoader
    if name in ("amend", "skip"):  # steering a build's plan (mixer.steer)
        from mixer import steer

        return getattr(steer, name)
    raise AttributeError(f"module 'mixer' has no attribute {name!r}")
