"""How ``milepost dashboard`` tells the Streamlit app where the API is: environment variables.

Kept apart from the client so the command line can name them without importing Streamlit.
"""

DEFAULT_API = "http://127.0.0.1:4318"
API_URL_ENV = "MILEPOST_API_URL"
API_TOKEN_ENV = "MILEPOST_API_TOKEN"  # the environment, not argv: other users can read a command line
