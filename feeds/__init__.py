"""Feed rules shared by the API and activities: KST dates, entry fields, happiness analysis."""
