"""Serving: self-contained model bundles and recommendations from them."""

from llmesr.serving.bundle import Bundle, BundleError, Recommendation
from llmesr.serving.export import export_bundle

__all__ = ["Bundle", "BundleError", "Recommendation", "export_bundle"]
