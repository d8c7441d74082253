"""DRN (Zheng et al., WWW 2018) in one package: the dueling Q-network (:mod:`.model`, also the
``drn`` registry model), the online agent with dueling bandit gradient descent, interleaving,
minor and major updates (:mod:`.agent`, :mod:`.dbgd`, :mod:`.interleaving`, :mod:`.replay`),
the baseline policies, the news simulator and its calibration from real logs
(:mod:`.simulator`, :mod:`.calibration`), the loop behind ``recforge online``, and replay
evaluation on real logs (:mod:`.logged` and :mod:`.globo` turn MIND impressions and Globo clicks
into hourly rounds, :mod:`.survival` models users' returns, :mod:`.offline` replays policies)."""
