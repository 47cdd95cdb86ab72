"""Seed Studio: a node-graph tool for diffusion image generation."""

__version__ = "0.1.0"
