"""What relay tells its operators: Prometheus metrics (`metrics`) and log lines, JSON or plain (`logs`)."""
