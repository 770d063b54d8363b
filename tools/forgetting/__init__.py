"""The forgetting demo's parts (tools/forgetting_demo.py runs them): ``builds`` (the recipes in
recipes/forgetting/, re-weighted and built with mixer), ``train`` (one training job through
``StreamingMixture``) and ``report`` (JSON, table, plot)."""
