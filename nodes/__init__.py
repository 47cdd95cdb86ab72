"""The node library: one module per category. The registry imports every module here and
registers each node class it defines; no Qt may be imported from this package."""
