"""HuBERT masked-prediction pretraining of small teachers (the demo's own teacher)."""
