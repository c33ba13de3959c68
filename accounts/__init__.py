"""Account rules shared by the API and the activities: tokens, PKCE, nicknames."""
