"""shop: orders. Reads prices and reserves stock in books, posts notices to chat."""
