#!/usr/bin/env python3
"""Lints template.yaml the way AWS will read it: runs the SAM transform offline
(aws-sam-translator), then cfn-lint on the resulting CloudFormation. Plain `cfn-lint` on a
SAM template skips most SAM mistakes. Exits non-zero on any error."""
import json
import os
import sys

from cfnlint.api import ManualArgs, lint
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs; the template names none."""

    def load(self):
        return {}


def main(path):
    # The translator fills pseudo parameters (region, partition) from the environment.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(path) as f:
        sam = yaml_parse(f.read())
    # `sam build`/`sam package` turn local CodeUri paths into S3 locations; do the same.
    for resource in sam.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(properties.get("CodeUri"), str):
            properties["CodeUri"] = f"s3://packaged-code/{properties['CodeUri']}.zip"
    try:
        cloudformation = transform(sam, {}, NoManagedPolicies())
    except InvalidDocumentException as error:
        for cause in error.causes:
            print(f"{path}: SAM: {cause.message}", file=sys.stderr)
        return 1
    matches = lint(json.dumps(cloudformation), config=ManualArgs(regions=["us-east-1"]))
    errors = [m for m in matches if m.rule.id.startswith("E")]
    for match in matches:
        print(f"{path} (after SAM transform): {match.rule.id} {match.message} [{'/'.join(map(str, match.path))}]")
    if not errors:
        print(f"{path}: SAM transform and cfn-lint passed ({len(matches)} warning(s))")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
