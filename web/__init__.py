"""web: the Flask app (feed, dashboard, model console, JSON API)."""
