"""One Streamlit page script per view; each runs ``render()`` when Streamlit executes it."""
