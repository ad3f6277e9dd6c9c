"""Clearsight's Streamlit review app (``streamlit run ui/main.py``; ``make ui``).

Talks to the prediction endpoint, the ZenML client, MLflow and the catalog;
it never imports pipeline steps.
"""
