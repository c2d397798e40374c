#!/usr/bin/env python3
"""Lints template.yaml the way AWS will read it: runs the SAM transform offline
(aws-sam-translator), then cfn-lint on the resulting CloudFormation. Plain `cfn-lint` on a
SAM template skips most SAM mistakes. Then checks what neither tool knows about this service
(`project_rules`): every route but the health check and the API description behind the API-key
authorizer, the authorizer's settings and its narrow role, and the least-privilege rules. Exits
non-zero on any error.

  check_template.py [template.yaml]    lint the template
  check_template.py --self-test        lint wrong copies of template.yaml, each must fail
"""
import copy
import json
import logging
import os
import re
import sys

from cfnlint.api import ManualArgs, lint
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# The routes that answer without a key: the health check and the API's OpenAPI description.
OPEN_ROUTE_KEYS = ("GET /api/health", "GET /api/openapi.json")
# Actions no function's role may allow: nothing is ever deleted (items expire by TTL, objects
# by the lifecycle rule; BatchWriteItem deletes too, and SAM's DynamoDBWritePolicy grants it),
# and no function changes the bucket's lifecycle or ACLs.
FORBIDDEN_ACTIONS = re.compile(r"^(dynamodb:(DeleteItem|BatchWriteItem|\*)|s3:(Delete.*|.*Lifecycle.*|.*Acl.*|\*)|\*)$",
                               re.IGNORECASE)
AUTHORIZER_ACTIONS = {"dynamodb:GetItem", "dynamodb:UpdateItem"}


# The translator's metrics warn "unpublished metrics" for every transform after the first.
logging.getLogger("samtranslator.metrics").setLevel(logging.ERROR)


class NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs; the template names none."""

    def load(self):
        return {}


def resources_of(template, kind):
    return {name: r.get("Properties", {}) for name, r in template.get("Resources", {}).items() if r.get("Type") == kind}


def as_list(value):
    return value if isinstance(value, list) else [value]


def ref(value):
    """The logical id a `!Ref` points at, or None."""
    return value.get("Ref") if isinstance(value, dict) else None


def authorizer_problems(name, properties):
    expected = {"AuthorizerType": "REQUEST", "AuthorizerPayloadFormatVersion": "2.0", "EnableSimpleResponses": True}
    problems = [f"authorizer {name}: {key} must be {value!r}, not {properties.get(key)!r}"
                for key, value in expected.items() if properties.get(key) != value]
    if properties.get("IdentitySource") != ["$request.header.Authorization"]:
        problems.append(f"authorizer {name}: IdentitySource must be ['$request.header.Authorization']")
    return problems


def authorizer_function(properties):
    """The logical id of the Lambda function an authorizer's URI names (`${Fn.Arn}`)."""
    uri = properties.get("AuthorizerUri")
    text = uri.get("Fn::Sub") if isinstance(uri, dict) else None
    found = re.search(r"\$\{(\w+)\.Arn\}", text if isinstance(text, str) else "")
    return found and found.group(1)


def role_statements(template, function):
    """Every statement of the inline policies of a Lambda function's role."""
    role = template["Resources"].get(function, {}).get("Properties", {}).get("Role")
    role_name = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
    policies = template["Resources"].get(role_name, {}).get("Properties", {}).get("Policies", [])
    return [s for policy in policies for s in as_list(policy["PolicyDocument"].get("Statement", []))]


def project_rules(template):
    """The service's own rules, on the template after the SAM transform."""
    problems = []
    authorizers = resources_of(template, "AWS::ApiGatewayV2::Authorizer")
    for name, properties in authorizers.items():
        problems += authorizer_problems(name, properties)
    for name, route in resources_of(template, "AWS::ApiGatewayV2::Route").items():
        if route.get("RouteKey") in OPEN_ROUTE_KEYS:
            continue
        if route.get("AuthorizationType") != "CUSTOM" or ref(route.get("AuthorizerId")) not in authorizers:
            problems.append(f"route {name} ({route.get('RouteKey')}): every route but {' and '.join(OPEN_ROUTE_KEYS)} needs "
                            "AuthorizationType: CUSTOM and an AuthorizerId naming the API-key authorizer")

    # The authorizer reads and touches key items, and nothing else.
    for name, properties in authorizers.items():
        function = authorizer_function(properties)
        if not function:
            problems.append(f"authorizer {name}: AuthorizerUri does not name a function of this template")
            continue
        for statement in role_statements(template, function):
            leading = statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
            actions = set(as_list(statement.get("Action", [])))
            if statement.get("Effect") == "Allow" and (not actions <= AUTHORIZER_ACTIONS or leading != ["KEY#*"]):
                problems.append(f"authorizer function {function}: its role may only allow {sorted(AUTHORIZER_ACTIONS)} "
                                f"on key items (dynamodb:LeadingKeys KEY#*), not {sorted(actions)} ({leading})")

    for name in resources_of(template, "AWS::IAM::Role"):
        for policy in template["Resources"][name]["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"].get("Statement", [])):
                if statement.get("Effect") != "Allow":
                    continue
                for action in as_list(statement.get("Action", [])):
                    if FORBIDDEN_ACTIONS.match(action):
                        problems.append(f"role {name}, policy {policy.get('PolicyName')}: {action} is not allowed "
                                        "(no deletes, lifecycle, ACL or wildcard actions)")

    tls_denied = any(
        s.get("Effect") == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
        for policy in resources_of(template, "AWS::S3::BucketPolicy").values()
        for s in as_list(policy.get("PolicyDocument", {}).get("Statement", [])))
    if not tls_denied:
        problems.append("no bucket policy denies requests without TLS (aws:SecureTransport false)")
    for name, policy in resources_of(template, "AWS::SQS::QueuePolicy").items():
        for statement in as_list(policy.get("PolicyDocument", {}).get("Statement", [])):
            if statement.get("Principal") == {"Service": "s3.amazonaws.com"}:
                conditions = {key for test in statement.get("Condition", {}).values() for key in test}
                if not {"aws:SourceArn", "aws:SourceAccount"} <= conditions:
                    problems.append(f"queue policy {name}: S3 may send only from this stack's bucket "
                                    "(conditions aws:SourceArn and aws:SourceAccount)")
    return problems


def check(sam, label, cfn_lint=True):
    """The errors in one SAM template (a parsed dict); cfn-lint's warnings are printed."""
    sam = copy.deepcopy(sam)
    # `sam build`/`sam package` turn local CodeUri paths into S3 locations; do the same.
    for resource in sam.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(properties.get("CodeUri"), str):
            properties["CodeUri"] = f"s3://packaged-code/{properties['CodeUri']}.zip"
    try:
        cloudformation = transform(sam, {}, NoManagedPolicies())
    except InvalidDocumentException as error:
        return [f"{label}: SAM: {cause.message}" for cause in error.causes]
    matches = lint(json.dumps(cloudformation), config=ManualArgs(regions=["us-east-1"])) if cfn_lint else []
    for match in matches:
        if not match.rule.id.startswith("E"):
            print(f"{label} (after SAM transform): {match.rule.id} {match.message} [{'/'.join(map(str, match.path))}]")
    errors = [f"{label} (after SAM transform): {m.rule.id} {m.message} [{'/'.join(map(str, m.path))}]"
              for m in matches if m.rule.id.startswith("E")]
    return errors + [f"{label}: {problem}" for problem in project_rules(cloudformation)]


def load(path):
    with open(path) as f:
        return yaml_parse(f.read())


def main(path):
    # The translator fills pseudo parameters (region, partition) from the environment.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    errors = check(load(path), path)
    for error in errors:
        print(error, file=sys.stderr)
    if not errors:
        print(f"{path}: SAM transform, cfn-lint and the project's rules passed")
    return 1 if errors else 0


# Wrong templates the lint must refuse: (what is wrong, a change to a copy of template.yaml,
# a word the error must contain).
def _set(resource, key, value):
    def change(sam):
        sam["Resources"][resource]["Properties"][key] = value
    return change


def _drop(resource, key):
    def change(sam):
        del sam["Resources"][resource]["Properties"][key]
    return change


def _open_route(sam):
    sam["Resources"]["OpenUpload"] = {"Type": "AWS::ApiGatewayV2::Route", "Properties": {
        "ApiId": {"Ref": "HttpApi"}, "RouteKey": "POST /api/upload/", "AuthorizationType": "NONE",
        "Target": {"Fn::Sub": "integrations/${ApiIntegration}"}}}


def _add_policy(function, policy):
    def change(sam):
        sam["Resources"][function]["Properties"]["Policies"].append(policy)
    return change


def _drop_tls_policy(sam):
    del sam["Resources"]["BucketTlsOnlyPolicy"]


def _queue_policy_account_only(sam):
    statement = sam["Resources"]["JobsFromBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    del statement["Condition"]["ArnEquals"]


WRONG_TEMPLATES = [
    ("the $default route without AuthorizationType CUSTOM", _drop("ApiRoute", "AuthorizationType"), "ApiRoute"),
    ("the $default route open (NONE, no authorizer)",
     lambda sam: (_set("ApiRoute", "AuthorizationType", "NONE")(sam), _drop("ApiRoute", "AuthorizerId")(sam)), "ApiRoute"),
    ("the $default route CUSTOM without an AuthorizerId", _drop("ApiRoute", "AuthorizerId"), "ApiRoute"),
    ("a second route without a key", _open_route, "OpenUpload"),
    ("the authorizer on payload format 1.0", _set("ApiAuthorizer", "AuthorizerPayloadFormatVersion", "1.0"),
     "AuthorizerPayloadFormatVersion"),
    ("the authorizer without simple responses", _set("ApiAuthorizer", "EnableSimpleResponses", False),
     "EnableSimpleResponses"),
    ("the authorizer reading a query string", _set("ApiAuthorizer", "IdentitySource", ["$request.querystring.key"]),
     "IdentitySource"),
    ("the authorizer's role reading the whole table", _add_policy("AuthorizerFunction", {"DynamoDBReadPolicy": {
        "TableName": {"Ref": "Table"}}}), "AuthorizerFunction"),
    ("S3CrudPolicy on the API (deletes)", _add_policy("ApiFunction", {"S3CrudPolicy": {
        "BucketName": {"Ref": "Bucket"}}}), "s3:DeleteObject"),
    ("DynamoDBWritePolicy on the worker (BatchWriteItem deletes)", _add_policy("WorkerFunction", {
        "DynamoDBWritePolicy": {"TableName": {"Ref": "Table"}}}), "dynamodb:BatchWriteItem"),
    ("DynamoDBCrudPolicy on the notifier (DeleteItem)", _add_policy("NotifierFunction", {"DynamoDBCrudPolicy": {
        "TableName": {"Ref": "Table"}}}), "dynamodb:DeleteItem"),
    ("no bucket policy denying plain HTTP", _drop_tls_policy, "aws:SecureTransport"),
    ("the queue policy for S3 conditioned on the account only", _queue_policy_account_only, "aws:SourceArn"),
]


def self_test(path):
    """The project's rules pass template.yaml and refuse each of WRONG_TEMPLATES for its own
    reason. cfn-lint (slow, and not what is tested here) runs in `main` only."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    sam = load(path)
    failures = [f"{path} itself: {error}" for error in check(sam, path, cfn_lint=False)]
    for what, change, expected in WRONG_TEMPLATES:
        wrong = copy.deepcopy(sam)
        change(wrong)
        errors = check(wrong, f"[{what}]", cfn_lint=False)
        if not any(expected in error for error in errors):
            failures.append(f"not caught: {what} (errors: {errors or 'none'})")
    for failure in failures:
        print(f"check_template self-test: {failure}", file=sys.stderr)
    if not failures:
        print(f"check_template self-test: template.yaml passes; all {len(WRONG_TEMPLATES)} wrong copies refused")
    return 1 if failures else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--self-test"]:
        sys.exit(self_test(args[1] if len(args) > 1 else "template.yaml"))
    sys.exit(main(args[0] if args else "template.yaml"))
