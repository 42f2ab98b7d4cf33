"""Detection and vision ops without torchvision (NMS, RoIAlign)."""
