"""After pretraining: supervised fine-tuning, a Bradley-Terry reward model, DPO, best-of-n
sampling, and a transparent gold reward that labels preference pairs (docs/preference.md)."""
