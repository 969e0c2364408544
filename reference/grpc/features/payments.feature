Feature: PaymentsService.DoTransaction
  A transfer moves amount + interest (in minor units) from one account to another; invalid
  transfers are refused with INVALID_ARGUMENT and a message naming the problem.

  Background:
    Given the payments server is running with TLS

  Scenario Outline: <case>
    When transaction "<id>" moves <amount> plus <interest> from "<source>" to "<target>"
    Then the result is "<result>"

    Examples:
      | case                      | id   | source | target | amount | interest | result                                           |
      | a plain transfer          | t-1  | acc-a  | acc-b  | 10000  | 0        | transferred 10000                                |
      | interest is added         | t-2  | acc-a  | acc-b  | 10000  | 250      | transferred 10250                                |
      | missing id                |      | acc-a  | acc-b  | 100    | 0        | INVALID_ARGUMENT: id must not be empty           |
      | same account              | t-3  | acc-a  | acc-a  | 100    | 0        | INVALID_ARGUMENT: source and target account must differ |
      | zero amount               | t-4  | acc-a  | acc-b  | 0      | 0        | INVALID_ARGUMENT: amount must be positive (minor units) |
      | negative interest         | t-5  | acc-a  | acc-b  | 100    | -1       | INVALID_ARGUMENT: interest must not be negative  |
