"""chat: per-book and free rooms, live messages over Server-Sent Events, a small web page."""
