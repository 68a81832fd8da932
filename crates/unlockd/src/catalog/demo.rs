//! A deterministic, realistic synthetic catalog for demos, tests and benchmarks. The same
//! options always give the same rows. The first event has `eventId` 139574 and people 789
//! and 790 (both with emails), so the upstream documentation's example works as written.

use std::path::Path;

use super::{EventRecord, ExhibitorRecord, PersonRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoOptions {
    pub events: usize,
    pub personnel: usize,
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            events: 50,
            personnel: 20_000,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DemoCatalog {
    pub events: Vec<EventRecord>,
    pub exhibitors: Vec<ExhibitorRecord>,
    pub personnel: Vec<PersonRecord>,
}

/// The documented example's event alias and people.
pub const EXAMPLE_EVENT_ALIAS: &str = "139574";
pub const EXAMPLE_PEOPLE: [&str; 2] = ["789", "790"];
/// Personnel ids are consecutive numbers from here, so 789 and 790 are early rows.
const FIRST_PERSON_ID: usize = 700;

/// SplitMix64: small, fast, and stable across versions (unlike a library RNG's stream).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FIRST: &[&str] = &[
    "Ava", "Liam", "Sofia", "Noah", "Mia", "Lucas", "Emma", "Mateo", "Olivia", "Ethan", "Hana",
    "Yuki", "Priya", "Arjun", "Chen", "Wei", "Fatima", "Omar", "Elena", "Marco", "Ingrid", "Lars",
    "Amara", "Kofi", "Chloe", "Jonas", "Lea", "Tomás", "Isabel", "Daniel", "Grace", "Samuel",
    "Nora", "Felix", "Aisha", "Ravi", "Mei", "Diego", "Zoe", "Hugo",
];
const LAST: &[&str] = &[
    "Smith",
    "Garcia",
    "Müller",
    "Rossi",
    "Kim",
    "Nguyen",
    "Patel",
    "Silva",
    "Cohen",
    "Novak",
    "Tanaka",
    "Okafor",
    "Johansson",
    "Dubois",
    "Kowalski",
    "Haddad",
    "Murphy",
    "Lopez",
    "Schmidt",
    "Bianchi",
    "Wang",
    "Singh",
    "Costa",
    "Andersen",
    "Moreau",
    "Fischer",
    "Ivanova",
    "Mensah",
    "Park",
    "Larsen",
];
const COMPANY_A: &[&str] = &[
    "Blue",
    "Nordic",
    "Apex",
    "Vertex",
    "Bright",
    "Summit",
    "Quantum",
    "Harbor",
    "Granite",
    "Silver",
    "Cedar",
    "Atlas",
    "Nova",
    "Pioneer",
    "Crimson",
    "Evergreen",
    "Orbit",
    "Polar",
];
const COMPANY_B: &[&str] = &[
    "Logistics",
    "Robotics",
    "Foods",
    "Medical",
    "Packaging",
    "Analytics",
    "Energy",
    "Textiles",
    "Systems",
    "Labs",
    "Materials",
    "Security",
    "Mobility",
    "Software",
    "Devices",
    "Optics",
];
const COMPANY_C: &[&str] = &["Inc", "GmbH", "Ltd", "SA", "AB", "BV", "Corp", "Group"];
const INDUSTRY: &[&str] = &[
    "Packaging",
    "Food Tech",
    "Medical Devices",
    "Logistics",
    "Robotics",
    "Renewable Energy",
    "Cybersecurity",
    "Textile",
    "Automotive",
    "Retail Tech",
    "Aerospace",
    "AgriTech",
];
const KIND: &[&str] = &[
    "Expo", "Summit", "World", "Forum", "Show", "Congress", "Fair",
];
const CITIES: &[(&str, &str, &str, &str)] = &[
    (
        "Las Vegas",
        "Nevada",
        "United States",
        "Las Vegas Convention Center",
    ),
    ("Chicago", "Illinois", "United States", "McCormick Place"),
    (
        "Orlando",
        "Florida",
        "United States",
        "Orange County Convention Center",
    ),
    ("Frankfurt", "Hesse", "Germany", "Messe Frankfurt"),
    ("Munich", "Bavaria", "Germany", "Messe München"),
    (
        "Paris",
        "Île-de-France",
        "France",
        "Paris Expo Porte de Versailles",
    ),
    ("Milan", "Lombardy", "Italy", "Fiera Milano"),
    ("Barcelona", "Catalonia", "Spain", "Fira Barcelona Gran Via"),
    ("Amsterdam", "North Holland", "Netherlands", "RAI Amsterdam"),
    ("London", "England", "United Kingdom", "ExCeL London"),
    (
        "Dubai",
        "Dubai",
        "United Arab Emirates",
        "Dubai World Trade Centre",
    ),
    (
        "Singapore",
        "Singapore",
        "Singapore",
        "Marina Bay Sands Expo",
    ),
    ("Tokyo", "Tokyo", "Japan", "Tokyo Big Sight"),
    (
        "Shanghai",
        "Shanghai",
        "China",
        "National Exhibition and Convention Center",
    ),
    ("São Paulo", "São Paulo", "Brazil", "São Paulo Expo"),
    ("Toronto", "Ontario", "Canada", "Enercare Centre"),
];
const DEPARTMENTS: &[(&str, &[&str])] = &[
    (
        "Sales",
        &[
            "Account Executive",
            "Sales Manager",
            "Head of Sales",
            "VP Sales",
        ],
    ),
    (
        "Marketing",
        &[
            "Marketing Manager",
            "Event Marketing Lead",
            "CMO",
            "Brand Manager",
        ],
    ),
    (
        "Engineering",
        &[
            "Software Engineer",
            "Engineering Manager",
            "CTO",
            "Solutions Architect",
        ],
    ),
    (
        "Operations",
        &[
            "Operations Manager",
            "COO",
            "Supply Chain Lead",
            "Plant Manager",
        ],
    ),
    (
        "Business Development",
        &["Business Development Manager", "Partnerships Director"],
    ),
    (
        "Product",
        &["Product Manager", "Head of Product", "Product Owner"],
    ),
    (
        "Executive",
        &["CEO", "Founder", "Managing Director", "President"],
    ),
];
const COUNTRY_CODES: &[&str] = &["+1", "+44", "+49", "+33", "+39", "+34", "+31", "+81", "+65"];

fn seniority(title: &str) -> &'static str {
    let t = title.to_ascii_lowercase();
    if ["ceo", "cto", "coo", "cmo", "founder", "president"]
        .iter()
        .any(|w| t.split_whitespace().any(|x| x == *w))
    {
        "c_level"
    } else if t.starts_with("vp") {
        "vp"
    } else if t.contains("head") || t.contains("director") || t.contains("managing") {
        "director"
    } else if t.contains("manager") || t.contains("lead") || t.contains("owner") {
        "manager"
    } else {
        "individual_contributor"
    }
}

fn slug(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| match c {
            'ä' | 'à' | 'á' => 'a',
            'ü' | 'ú' => 'u',
            'ö' | 'ó' => 'o',
            'é' | 'è' => 'e',
            'î' | 'í' => 'i',
            'ã' => 'a',
            c if c.is_ascii_alphanumeric() => c,
            _ => '-',
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

pub fn generate(options: &DemoOptions) -> DemoCatalog {
    let mut rng = Rng(options.seed);
    let mut catalog = DemoCatalog::default();
    let events = options.events.max(1);
    for e in 0..events {
        let id = (1001 + e).to_string();
        let event_id = if e == 0 {
            EXAMPLE_EVENT_ALIAS.to_string()
        } else {
            (139_574 + e * 37).to_string()
        };
        let (city, region, country, venue) = CITIES[rng.below(CITIES.len())];
        let industry = rng.pick(INDUSTRY);
        let name = format!("{} {} {}", industry, rng.pick(KIND), 2027 + (e % 2));
        let month = 1 + rng.below(12);
        let day = 1 + rng.below(25);
        let year = 2027 + (e % 2);
        catalog.events.push(EventRecord {
            id,
            event_id,
            name: Some(name.clone()),
            date_start: Some(format!("{year}-{month:02}-{day:02}")),
            date_end: Some(format!("{year}-{month:02}-{:02}", day + 2)),
            venue: Some(venue.to_string()),
            city: Some(city.to_string()),
            region: Some(region.to_string()),
            country: Some(country.to_string()),
            url: Some(format!("https://{}.example", slug(&name))),
            description: Some(format!(
                "The {industry} industry's meeting place in {city}: exhibitors, talks and buyers."
            )),
        });
    }

    // Exhibitors: about one per 10 people, spread over the events.
    let exhibitors = (options.personnel / 10).max(1);
    for x in 0..exhibitors {
        let company = format!(
            "{} {} {}",
            rng.pick(COMPANY_A),
            rng.pick(COMPANY_B),
            rng.pick(COMPANY_C)
        );
        let (_, _, country, _) = CITIES[rng.below(CITIES.len())];
        let event = &catalog.events[x % events];
        catalog.exhibitors.push(ExhibitorRecord {
            id: (5001 + x).to_string(),
            event_id: event.id.clone(),
            website: Some(format!("https://{}-{x}.example", slug(&company))),
            company_name: Some(company),
            country: Some(country.to_string()),
        });
    }

    for p in 0..options.personnel {
        let id = (FIRST_PERSON_ID + p).to_string();
        let example = EXAMPLE_PEOPLE.contains(&id.as_str());
        let exhibitor = &catalog.exhibitors[if example { 0 } else { rng.below(exhibitors) }];
        let company = exhibitor.company_name.clone().unwrap_or_default();
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        let (department, titles) = DEPARTMENTS[rng.below(DEPARTMENTS.len())];
        let title = rng.pick(titles);
        let mut event_ids = vec![exhibitor.event_id.clone()];
        if rng.chance(20) {
            let other = catalog.events[rng.below(events)].id.clone();
            if !event_ids.contains(&other) {
                event_ids.push(other);
            }
        }
        let source_type = match rng.below(10) {
            0 => vec!["exhibitor".to_string(), "social".to_string()],
            1 => vec!["visitors".to_string()],
            _ => vec!["exhibitor".to_string()],
        };
        let domain = exhibitor
            .website
            .as_deref()
            .and_then(|w| w.strip_prefix("https://"))
            .unwrap_or("example.com")
            .to_string();
        let email = (example || !rng.chance(15))
            .then(|| format!("{}.{}@{domain}", slug(first), slug(last)));
        let phone = rng.chance(50).then(|| {
            format!(
                "{} {} {} {:04}",
                rng.pick(COUNTRY_CODES),
                200 + rng.below(800),
                555,
                rng.below(10_000)
            )
        });
        catalog.personnel.push(PersonRecord {
            id,
            full_name: Some(format!("{first} {last}")),
            title: Some(title.to_string()),
            department: Some(department.to_string()),
            seniority_level: Some(seniority(title).to_string()),
            linkedin_url: Some(format!(
                "https://www.linkedin.com/in/{}-{}-{p}",
                slug(first),
                slug(last)
            )),
            company_name: Some(company),
            exhibitor_id: Some(exhibitor.id.clone()),
            event_ids,
            source_type,
            email,
            phone,
        });
    }
    catalog
}

/// Writes `events.csv`, `exhibitors.csv` and `personnel.csv` in the import format.
pub fn write_dir(catalog: &DemoCatalog, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();

    let mut w = csv::Writer::from_path(dir.join("events.csv"))?;
    w.write_record([
        "id",
        "event_id",
        "name",
        "date_start",
        "date_end",
        "venue",
        "city",
        "region",
        "country",
        "url",
        "description",
    ])?;
    for e in &catalog.events {
        w.write_record([
            e.id.clone(),
            e.event_id.clone(),
            opt(&e.name),
            opt(&e.date_start),
            opt(&e.date_end),
            opt(&e.venue),
            opt(&e.city),
            opt(&e.region),
            opt(&e.country),
            opt(&e.url),
            opt(&e.description),
        ])?;
    }
    w.flush()?;

    let mut w = csv::Writer::from_path(dir.join("exhibitors.csv"))?;
    w.write_record(["id", "event_id", "company_name", "website", "country"])?;
    for x in &catalog.exhibitors {
        w.write_record([
            x.id.clone(),
            x.event_id.clone(),
            opt(&x.company_name),
            opt(&x.website),
            opt(&x.country),
        ])?;
    }
    w.flush()?;

    let mut w = csv::Writer::from_path(dir.join("personnel.csv"))?;
    w.write_record([
        "id",
        "full_name",
        "title",
        "department",
        "seniority_level",
        "linkedin_url",
        "company_name",
        "exhibitor_id",
        "event_ids",
        "source_type",
        "email",
        "phone",
    ])?;
    for p in &catalog.personnel {
        w.write_record([
            p.id.clone(),
            opt(&p.full_name),
            opt(&p.title),
            opt(&p.department),
            opt(&p.seniority_level),
            opt(&p.linkedin_url),
            opt(&p.company_name),
            opt(&p.exhibitor_id),
            p.event_ids.join(";"),
            p.source_type.join(";"),
            opt(&p.email),
            opt(&p.phone),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::import::{read_catalog, ImportFiles};

    #[test]
    fn deterministic_and_realistic() {
        let options = DemoOptions::default();
        let a = generate(&options);
        assert_eq!(a, generate(&options));
        assert_ne!(a, generate(&DemoOptions { seed: 7, ..options }));
        assert_eq!(a.events.len(), 50);
        assert_eq!(a.personnel.len(), 20_000);
        let no_email = a.personnel.iter().filter(|p| p.email.is_none()).count();
        let no_phone = a.personnel.iter().filter(|p| p.phone.is_none()).count();
        assert!(
            (2_400..3_600).contains(&no_email),
            "{no_email} without email"
        );
        assert!(
            (9_000..11_000).contains(&no_phone),
            "{no_phone} without phone"
        );
        let example = &a.events[0];
        assert_eq!(example.event_id, EXAMPLE_EVENT_ALIAS);
        for id in EXAMPLE_PEOPLE {
            let p = a.personnel.iter().find(|p| p.id == id).unwrap();
            assert!(p.email.is_some());
            assert!(p.event_ids.contains(&example.id));
        }
    }

    #[test]
    fn written_files_read_back_through_the_importer() {
        let catalog = generate(&DemoOptions {
            events: 3,
            personnel: 200,
            seed: 1,
        });
        let dir = tempfile::tempdir().unwrap();
        write_dir(&catalog, dir.path()).unwrap();
        let files = ImportFiles {
            events: Some(dir.path().join("events.csv")),
            exhibitors: Some(dir.path().join("exhibitors.csv")),
            personnel: Some(dir.path().join("personnel.csv")),
        };
        let read = read_catalog(&files, &[]).unwrap();
        assert_eq!(records(&read.events), catalog.events);
        assert_eq!(records(&read.exhibitors), catalog.exhibitors);
        assert_eq!(records(&read.personnel), catalog.personnel);
        assert!(
            read.personnel.iter().all(|r| r.supplied.is_all()),
            "the demo files have every column"
        );
    }

    fn records<T: Clone>(rows: &[crate::catalog::Upsert<T>]) -> Vec<T> {
        rows.iter().map(|r| r.record.clone()).collect()
    }
}
