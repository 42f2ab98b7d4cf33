"""Test-time domain adaptation (MABN): adapt only the normalisation affine parameters from a
few unlabelled target images through a self-supervised auxiliary loss that meta-training
has aligned with the classification task; baselines BN-statistics re-estimation and TENT."""
