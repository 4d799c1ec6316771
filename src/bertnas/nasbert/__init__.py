"""NAS-BERT (KDD 2021): task-agnostic compression by block-wise distillation of one supernet."""
