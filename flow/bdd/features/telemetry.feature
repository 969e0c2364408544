Feature: One trace from POST /one to POST /three
  Service one and service two run as their own processes and export over OTLP to an in-process
  receiver; one trace id must cover the whole journey, and both services' JSON logs carry it.

  Scenario: One trace covers the flow
    Given service one and service two run as processes exporting telemetry
    When a client posts a valid request to the running processes
    Then one trace contains the spans "POST /one", "publish", "process", "POST /v2/oauth/token" and "POST /three"
    And the JSON logs of one and two carry that trace id
    And every metric the dashboards query is one the services emit
