"""The app's pages, registered with ``st.navigation`` in ``ui/main.py``.

Named ``views`` rather than ``pages`` so that Streamlit does not also
auto-discover them as a ``pages/`` folder.
"""
