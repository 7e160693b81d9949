"""The networks: the transformer that stylizes (and its tiled inference), the VGG loss network with
its architectures and ImageNet weights."""
