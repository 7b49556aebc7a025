"""The policy-gradient (PPO actor) study: ``reference`` (train or load the reference), ``study`` (return vs bits
per weight of the actor: LC with both L steps, naive post-training compression, QAT) and its costs."""
