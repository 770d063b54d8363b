"""mixer: exact, resumable data mixtures for continued pre-training of LLMs.

The flow, and where each step lives::

    recipe.yaml -> Recipe -> work units -> documents -> token ids -> blocks -> MDS shards
                   recipe   build.units    build.readers build.worker build.pack build.merge
                   _mixture build.budget   build.text    build.spill              artifacts.shards
                   _take    build.schedule build.lines   build.tokenizer (+ build.tokenizing,
                   _inputs  build.cut                    build.tiktoken_fast, tiktoken_vocab)
                 manifest.json (artifacts.manifest) + plan.json (artifacts.planfile, plan)
                 -> StreamingMixture (serve.mixture over serve.cache, serve.shardfile,
                    serve.cache_limit, serve.positions, serve.buffers; resume states: serve.state)
                 -> MixerLoader (serve.loader) or the trainer's own DataLoader -> the trainer
                    (integrations.litgpt, integrations.hf: trainer-specific adapters)
                 -> mixer stats / inspect / verify (report)

Reading order for a newcomer: ``recipe`` (what a user writes; ``_mixture`` its mixture and
phases, ``_take`` a source's read budget, ``_yaml`` the typed YAML access), ``build/__init__``
(the build's phases; ``build.budget``, ``cut``, ``schedule`` and ``budgeted``: reading only
what a ``take`` budget needs),
``artifacts`` (what a build writes), ``plan`` (pure index math: allocation, phases and their
limits, interleave, passes, slicing), ``serve`` (the cache, ``StreamingMixture``,
``MixerLoader``), ``integrations`` (one module per trainer), ``report``, ``cli``. ``errors``
holds every user-facing exception; ``identity`` the hashing; ``typed`` the checked loading of
JSON records.
"""

from mixer.version import __version__

__all__ = ["MixerLoader", "StreamingMixture", "__version__"]


def __getattr__(name: str):
    # Lazy: `import mixer` (the CLI, the build) must not import torch; trainers that ask for
    # StreamingMixture or MixerLoader already have it.
    if name == "StreamingMixture":
        from mixer.serve.mixture import StreamingMixture

        return StreamingMixture
    if name == "MixerLoader":
        from mixer.serve.loader import MixerLoader

        return MixerLoader
    raise AttributeError(f"module 'mixer' has no attribute {name!r}")
