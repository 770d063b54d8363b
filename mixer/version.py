"""mixer's version: a leaf, so the build can write it into a manifest without importing the
package's root (which reaches serving)."""

__version__ = "0.1.0"
