"""The Q-network study (docs/qnetworks.md): ``python -m experiments.rl.reference``, ``.naive`` (study 1),
``.finetune`` (2), ``.tradeoff`` (3), ``.selection`` (3s), ``.costs`` (4); shared pieces in :mod:`.common`."""
