"""Training: the LightningModule that makes any zoo model a classifier, with its losses, schedules and callbacks."""
