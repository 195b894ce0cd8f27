"""finetune: sentiment and behaviour fine-tuning, evaluation, the gated model registry and scheduled retraining."""
