"""Training: the LightningModule, `fst fit` / `fst validate`, stopping and resuming, one run per folder."""
