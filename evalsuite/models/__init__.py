"""Model adapters and model cards. Importing this package does not import torch."""
