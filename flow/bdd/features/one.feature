Feature: Service one accepts requests
  Service one stores every valid request and publishes it through its outbox; it rejects invalid
  input with the right status and a JSON error, and writes nothing for it.

  Background:
    Given service one is running

  Scenario: A valid request is stored and published
    When a client posts a valid request
    Then the response is 201 with a request id and its location
    And the request is stored in PostgreSQL
    And exactly one message keyed by the request id is published

  Scenario Outline: An invalid request is rejected and nothing is written
    When a client posts the "<case>" body
    Then the response is <status> with error code "<code>"
    And nothing is stored or published

    Examples:
      | case                  | status | code                   |
      | malformed JSON        | 400    | malformed_json         |
      | wrong type            | 400    | validation_failed      |
      | missing prompt        | 400    | validation_failed      |
      | empty user_id         | 400    | validation_failed      |
      | user_id too long      | 400    | validation_failed      |
      | too many data entries | 400    | validation_failed      |
      | body over the limit   | 413    | payload_too_large      |
      | text/plain            | 415    | unsupported_media_type |

  Scenario: An idempotent retry returns the first response
    When a client posts a valid request with idempotency key "retry-1"
    And the client posts the same request with idempotency key "retry-1" again
    Then both responses carry the same request id
    And exactly one request is stored
