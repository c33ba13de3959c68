"""Feed rules shared by the API and activities: entry fields, happiness analysis (dates: `kst`)."""
