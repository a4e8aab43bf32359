"""cost: the paper's Eq. (1) per request, per endpoint ($/h, $/1M tokens) and budgets (pure)."""
