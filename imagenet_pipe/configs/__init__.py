"""YAML presets shipped with imagenet-pipe (installed as ``imagenet_pipe.configs``)."""
