//! A fake GitHub REST API server that follows the official documentation.
