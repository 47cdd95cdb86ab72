"""The torch side: device policy, model folders and loading, the model cache, sampling, seeds
and image conversions. Nodes reach it through ``ctx.services`` and functions imported when they
run; the engine and the graph never import it."""

from studio.runtime.deferred_inits import defer_package_inits

# diffusers' model packages import ~140 model classes we never build: import what is used only.
defer_package_inits()
