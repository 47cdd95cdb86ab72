"""The torch side: image conversions now; device policy, model folders and loading, the
model cache and seeds as the diffusion core lands."""
