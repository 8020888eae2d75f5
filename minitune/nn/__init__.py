"""Modules: parameter trees and the layers BERT is built from."""
from .layers import Dropout, Embedding, LayerNorm, Linear
from .module import Module, ModuleList, Parameter

__all__ = ["Module", "ModuleList", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout"]
