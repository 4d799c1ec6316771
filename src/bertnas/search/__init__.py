"""Search algorithms: Gumbel-softmax differentiable NAS over the AdaBERT space, and derivation."""
