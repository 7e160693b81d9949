"""Losses: the style-loss registry and the terms of training (`style`), and the perceptual
criterion that runs the VGG and adds them up (`criterion`), and the temporal-stability term
(`temporal`), which needs no VGG. Every public name of `style` is
importable from `fst.losses` as before."""

from fst.losses.style import *  # noqa: F401,F403 - the registry's public face (its __all__)
