"""mixer: exact, resumable data mixtures for continued pre-training of LLMs."""

__version__ = "0.1.0"
__all__ = ["StreamingMixture", "__version__"]


def __getattr__(name: str):
    # Lazy: `import mixer` (the CLI, the build) must not import torch; trainers that ask for
    # StreamingMixture already have it.
    if name == "StreamingMixture":
        from mixer.serve.mixture import StreamingMixture

        return StreamingMixture
    raise AttributeError(f"module 'mixer' has no attribute {name!r}")
