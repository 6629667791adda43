"""Scripts and helpers run from the repository root (``python tools/<script>.py``); a package so that
``imagenet-pipe eval --model tools.models:efficientnet_lite0`` can import its model factories."""
