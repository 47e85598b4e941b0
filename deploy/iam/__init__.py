"""IAM policy templates, the AWS calls they must allow, a renderer and an evaluator."""
