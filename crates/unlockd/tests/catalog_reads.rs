//! Catalog reads (SPEC §2.6): events, an event's personnel, profiles and contact search,
//! with emails and phones shown only to the account that unlocked them.

mod common;

use common::{assert_envelope, person, spawn_app, TestApp};
use serde_json::Value;

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Adds varied people to event 1001 (alias 139574).
async fn varied_people(app: &TestApp) {
    let mut people = Vec::new();
    let rows = [
        (
            "900",
            "Ava Lindqvist",
            "VP Sales",
            "Sales",
            "vp",
            "Nordic Robotics AB",
            "x1",
            &["exhibitor", "social"][..],
        ),
        (
            "901",
            "Liam O'Brien",
            "Sales Manager",
            "sales",
            "Manager",
            "Nordic Robotics AB",
            "x1",
            &["exhibitor"][..],
        ),
        (
            "902",
            "Mia Chen",
            "Software Engineer",
            "Engineering",
            "individual_contributor",
            "Apex Optics Ltd",
            "x2",
            &["visitors"][..],
        ),
        (
            "903",
            "Noah Müller",
            "Head of Marketing",
            "Marketing",
            "director",
            "Apex Optics Ltd",
            "x2",
            &["exhibitor"][..],
        ),
    ];
    for (id, name, title, department, level, company, exhibitor, sources) in rows {
        let mut p = person(id, &["1001"], Some(&format!("{id}@example.com")));
        p.full_name = Some(name.into());
        p.title = Some(title.into());
        p.department = Some(department.into());
        p.seniority_level = Some(level.into());
        p.company_name = Some(company.into());
        p.exhibitor_id = Some(exhibitor.into());
        p.source_type = sources.iter().map(|s| s.to_string()).collect();
        if id == "903" {
            p.phone = None;
        }
        people.push(p);
    }
    app.store.import_personnel(&people, &|_| {}).await.unwrap();
}

#[tokio::test]
async fn events_list_filters_and_paginates() {
    let app = spawn_app().await;
    let (_, key) = app.account(0).await;
    let (status, page) = app.get(&key, "/external/events/list").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (
            page["total"].as_i64(),
            page["page"].as_i64(),
            page["pageSize"].as_i64()
        ),
        (Some(2), Some(1), Some(20))
    );
    assert_eq!(
        (page["totalPages"].as_i64(), page["hasMore"].as_bool()),
        (Some(1), Some(false))
    );
    let first = &page["items"][0];
    assert_eq!(first["id"], "1001");
    assert_eq!(first["eventId"], "139574");
    assert_eq!(first["personnelCount"], 103);
    assert_eq!(first["exhibitorCount"], 0);
    assert_eq!(first["dateStart"], "2027-03-01");

    let (_, one) = app
        .get(&key, "/external/events/list?pageSize=1&page=2")
        .await;
    assert_eq!(
        (
            one["total"].as_i64(),
            one["totalPages"].as_i64(),
            one["hasMore"].as_bool()
        ),
        (Some(2), Some(2), Some(false))
    );
    assert_eq!(ids(&one), ["1002"]);
    let (_, none) = app
        .get(
            &key,
            "/external/events/list?keyword=2002&country=germany&city=BERLIN",
        )
        .await;
    assert_eq!(
        ids(&none),
        ["1002"],
        "keyword matches the name; country and city ignore case"
    );
    let (_, empty) = app.get(&key, "/external/events/list?country=France").await;
    assert_eq!(
        (empty["total"].as_i64(), empty["totalPages"].as_i64()),
        (Some(0), Some(0))
    );
    let (_, dated) = app
        .get(
            &key,
            "/external/events/list?date_start_from=2027-03-01&date_start_to=2027-03-01",
        )
        .await;
    assert_eq!(dated["total"], 2);
    let (_, after) = app
        .get(&key, "/external/events/list?date_start_from=2027-03-02")
        .await;
    assert_eq!(after["total"], 0);

    assert_eq!(
        app.get(&key, "/external/events/list?keyword=").await.0,
        200,
        "a blank filter is no filter"
    );
    for bad in [
        "page=0",
        "pageSize=101",
        "pageSize=abc",
        "date_start_from=03/01/2027",
    ] {
        let (status, body) = app.get(&key, &format!("/external/events/list?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_envelope(status, &body, "VALIDATION_ERROR", &[]);
        let field = bad.split('=').next().unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{bad}: {body}"
        );
    }

    for reference in ["1001", "139574"] {
        let (status, detail) = app
            .get(&key, &format!("/external/events/{reference}"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(detail["event"]["id"], "1001");
    }
    let (status, body) = app.get(&key, "/external/events/nope").await;
    assert_eq!(status, 404);
    assert_envelope(status, &body, "EVENT_NOT_FOUND", &[]);
}

#[tokio::test]
async fn personnel_list_filters_by_every_field() {
    let app = spawn_app().await;
    varied_people(&app).await;
    let (_, key) = app.account(0).await;
    let list = |q: &str| {
        let q = q.to_string();
        let app = &app;
        let key = key.clone();
        async move {
            app.get(
                &key,
                &format!("/external/personnel/list?event_id=139574{q}"),
            )
            .await
        }
    };
    let (status, page) = list("").await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 107);
    assert_eq!(page["pageSize"], 50, "personnel default page size");
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    assert_eq!(
        (page["totalPages"].as_i64(), page["hasMore"].as_bool()),
        (Some(3), Some(true))
    );
    assert_eq!(page["semantics"]["accessMode"], "full");
    assert_eq!(list("&pageSize=51").await.0, 400, "max 50");
    let (_, last) = list("&page=3").await;
    assert_eq!(
        (
            last["items"].as_array().unwrap().len(),
            last["hasMore"].as_bool()
        ),
        (7, Some(false))
    );
    let (_, beyond) = list("&page=9").await;
    assert_eq!(
        (
            beyond["total"].as_i64(),
            beyond["items"].as_array().unwrap().len()
        ),
        (Some(107), 0)
    );

    assert_eq!(
        ids(&list("&department=SALES&search_query=ava").await.1),
        ["900"]
    );
    // The seeded people are all managers in Sales; 901 is "Manager" in "sales".
    assert_eq!(
        list("&level=MANAGER&department=sales").await.1["total"],
        104
    );
    assert_eq!(ids(&list("&exhibitor_id=x2").await.1), ["902", "903"]);
    assert_eq!(
        ids(&list("&search_query=head%20market").await.1),
        ["903"],
        "word prefixes over name and title"
    );
    assert_eq!(ids(&list("&search_query=m%C3%BCller").await.1), ["903"]);
    assert_eq!(ids(&list("&sourceType=visitors").await.1), ["902"]);
    assert_eq!(ids(&list("&sourceType=social").await.1), ["900"]);
    assert_eq!(list("&sourceType=robots").await.0, 400);
    let (_, nothing) = list("&search_query=%21%21%21").await;
    assert_eq!(nothing["total"], 0);

    let (status, body) = app
        .get(&key, "/external/personnel/list?event_id=nope")
        .await;
    assert_eq!(status, 404);
    assert_envelope(status, &body, "EVENT_NOT_FOUND", &[]);
    let (status, body) = app.get(&key, "/external/personnel/list").await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("event_id"));
    let (_, other_event) = app
        .get(&key, "/external/personnel/list?event_id=2002")
        .await;
    assert_eq!(ids(&other_event), ["800"]);
}

#[tokio::test]
async fn contacts_search_matches_company_role_and_name() {
    let app = spawn_app().await;
    varied_people(&app).await;
    let (_, key) = app.account(0).await;
    let search = |q: &str| {
        let path = format!("/external/contacts/search?{q}");
        let app = &app;
        let key = key.clone();
        async move { app.get(&key, &path).await }
    };
    let (status, page) = search("company_name=nordic").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["900", "901"]);
    assert_eq!(page["pageSize"], 20);
    assert!(page.get("semantics").is_none());
    assert_eq!(
        ids(&search("company_name=Nordic%20Robotics&role=sales%20man")
            .await
            .1),
        ["901"]
    );
    assert_eq!(
        ids(&search("company_name=apex&person_name=mia").await.1),
        ["902"]
    );
    assert_eq!(search("company_name=acme&pageSize=5").await.1["total"], 104);
    assert_eq!(
        search("company_name=zzz").await.1["total"],
        0,
        "no match is an empty page"
    );
    for bad in [
        "",
        "company_name=",
        "role=vp",
        "company_name=acme&pageSize=0",
    ] {
        let (status, body) = search(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_envelope(status, &body, "VALIDATION_ERROR", &[]);
    }
    let long = "a".repeat(201);
    assert_eq!(search(&format!("company_name={long}")).await.0, 400);
}

#[tokio::test]
async fn contacts_show_only_to_the_account_that_unlocked_them() {
    let app = spawn_app().await;
    varied_people(&app).await;
    let (_, alice) = app.account(10_000).await;
    let (_, bob) = app.account(10_000).await;
    let profile = |key: &str, id: &str| {
        let key = key.to_string();
        let id = id.to_string();
        let app = &app;
        async move {
            let (status, body) = app
                .get(
                    &key,
                    &format!("/external/personnel/profile?personnel_id={id}"),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let locked = profile(&alice, "900").await;
    assert_eq!(locked["contactUnlockStatus"], "locked");
    assert_eq!(locked["email"], Value::Null);
    assert_eq!(locked["phone"], Value::Null);
    assert_eq!(locked["phoneUnlockStatus"], Value::Null);
    assert_eq!(locked["eventCount"], 1);
    assert_eq!(
        locked["sourceType"],
        serde_json::json!(["exhibitor", "social"])
    );

    let (_, email_task) = app.unlock_ids(&alice, &["900", "791"]).await;
    let (status, _) = post(
        &app,
        &alice,
        "/external/contacts/unlock-phone",
        serde_json::json!({"event_id": "139574", "personnel_ids": ["900", "903"]}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        profile(&alice, "900").await["contactUnlockStatus"],
        "unlocking"
    );
    assert_eq!(
        profile(&alice, "900").await["phoneUnlockStatus"],
        "processing"
    );
    assert_eq!(profile(&bob, "900").await["contactUnlockStatus"], "locked");
    app.drain().await;

    let mine = profile(&alice, "900").await;
    assert_eq!(mine["contactUnlockStatus"], "unlocked");
    assert_eq!(mine["email"], "900@example.com");
    assert_eq!(mine["phoneUnlockStatus"], "ready");
    assert!(mine["phone"].as_str().unwrap().starts_with("+1"));
    let failed = profile(&alice, "791").await;
    assert_eq!(
        (
            failed["contactUnlockStatus"].as_str(),
            failed["email"].is_null()
        ),
        (Some("failed"), true)
    );
    assert_eq!(profile(&alice, "903").await["phoneUnlockStatus"], "failed");
    assert_eq!(
        profile(&alice, "903").await["contactUnlockStatus"],
        "locked",
        "email and phone are independent"
    );

    let theirs = profile(&bob, "900").await;
    assert_eq!(
        (
            theirs["contactUnlockStatus"].as_str(),
            theirs["email"].is_null(),
            theirs["phone"].is_null()
        ),
        (Some("locked"), true, true)
    );
    // The same holds in lists and search.
    let (_, page) = app
        .get(
            &alice,
            "/external/personnel/list?event_id=139574&search_query=ava",
        )
        .await;
    assert_eq!(page["items"][0]["email"], "900@example.com");
    let (_, page) = app
        .get(&bob, "/external/contacts/search?company_name=nordic")
        .await;
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["email"].is_null()));
    assert!(email_task["task_id"].is_string());

    let (status, body) = app
        .get(&alice, "/external/personnel/profile?personnel_id=nope")
        .await;
    assert_eq!(status, 404);
    assert_envelope(status, &body, "PERSONNEL_NOT_FOUND", &[]);
    for bad in ["", "?personnel_id=", "?personnel_id=a%20b"] {
        let (status, _) = app
            .get(&alice, &format!("/external/personnel/profile{bad}"))
            .await;
        assert_eq!(status, 400, "{bad}");
    }
}
