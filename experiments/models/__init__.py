"""One module per model family (the registry that maps a config's ``model.name`` to them is
``experiments.families``):

- ``mlp``: the source's MLP 1→h→w→1 (``model=mlp``), hand-batched replicates;
- ``conv``: the conv identity net (``model=conv``); ``resnet``: one 2-D residual block on digits (``model=resnet``);
- ``mlp_classifier``, ``cnn1d``, ``resnet1d``, ``autoencoder``, ``baselines`` (``logistic``, ``mlp_reference``): the
  MNIST-1D and vector families, built from ``experiments.layers`` (``common``: what they share).

Nothing is imported here: import the family's own module.
"""
