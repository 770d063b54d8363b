"""The recipe stage: what a user writes, read into frozen records and checked before any work.

- `load`: ``load_recipe`` / ``parse_recipe`` and the records (`Recipe`, `SourceSpec`,
  `TokenizerSpec`, `ValidationSpec`);
- `keys`: typed access to YAML mappings (one-line errors naming the key), sizes, defaults;
- `inputs`: where a source's documents come from (files, Hugging Face datasets);
- `mixture`: the mixture's total, weights and phases;
- `take`: how much of a source the build reads.
"""

from mixer.recipe.inputs import FILE_KINDS, HFSpec, file_kind
from mixer.recipe.load import (
    Recipe,
    SourceSpec,
    TokenizerSpec,
    ValidationSpec,
    load_recipe,
    parse_recipe,
)
from mixer.recipe.mixture import MixtureSpec, PhaseSpec
from mixer.recipe.take import TakeSpec

__all__ = [
    "FILE_KINDS",
    "HFSpec",
    "MixtureSpec",
    "PhaseSpec",
    "Recipe",
    "SourceSpec",
    "TakeSpec",
    "TokenizerSpec",
    "ValidationSpec",
    "file_kind",
    "load_recipe",
    "parse_recipe",
]
