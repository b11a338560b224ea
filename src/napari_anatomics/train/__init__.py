"""Stage 3, train: the recipe, data checks, sampler, augmentation, targets, losses, the loop."""
