"""Serving: self-contained model bundles and recommendations from them."""

from llmesr.serving.bundle import Bundle, BundleError, DuplicateItem, ItemRefused, Recommendation
from llmesr.serving.export import export_bundle

__all__ = ["Bundle", "BundleError", "DuplicateItem", "ItemRefused", "Recommendation", "export_bundle"]
