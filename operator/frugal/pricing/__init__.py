"""pricing: shell around cloud price and capacity APIs (AWS via boto3)."""
