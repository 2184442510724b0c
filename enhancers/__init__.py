"""Enhancers (CAN, PIEA, EnhanceGAN, PieNet, WESPE); each lands with its own issue."""
