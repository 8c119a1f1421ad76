package lsp

import (
	"strconv"
	"time"

	"github.com/aortagw/aortagw/internal/hl7"
)

// OIDLSPMessage is the root of message ids the simulator mints [P].
const OIDLSPMessage = "2.16.840.1.113883.2.4.6.6.1.1"

// xw adds the simulator's answer parts to hl7.Writer.
type xw struct{ hl7.Writer }

// wrapper writes the transmission wrapper of an answer to req.
func (w *xw) wrapper(interaction, msgID string, now time.Time, req *hl7.Message, ackType string, details []hl7.AckDetail) {
	w.Open(interaction, "xmlns", hl7.NS)
	w.Empty("id", "root", OIDLSPMessage, "extension", msgID)
	w.Empty("creationTime", "value", hl7.FormatTS(now))
	w.Empty("versionCode", "code", "NICTIZEd2005-Okt")
	w.Empty("interactionId", "root", hl7.OIDInteraction, "extension", interaction)
	w.Empty("profileId", "root", hl7.OIDProfile, "extension", "810")
	w.Empty("processingCode", "code", "P")
	w.Empty("processingModeCode", "code", "T")
	w.Empty("acceptAckCode", "code", "NE")
	w.Open("acknowledgement", "typeCode", ackType)
	w.Open("targetMessage")
	w.Empty("id", "root", req.MessageIDRoot, "extension", req.MessageIDExt)
	w.Close("targetMessage")
	for _, d := range details {
		w.Open("acknowledgementDetail", "typeCode", d.TypeCode)
		w.Empty("code", "code", d.Code, "codeSystem", d.CodeSystem)
		w.Text("text", d.Text)
		w.Close("acknowledgementDetail")
	}
	w.Close("acknowledgement")
	w.device("receiver", req.SenderApp)
	w.device("sender", hl7.LSPApp)
}

func (w *xw) device(role, app string) {
	w.Open(role)
	w.Open("device", "classCode", "DEV", "determinerCode", "INSTANCE")
	w.Empty("id", "root", hl7.OIDApp, "extension", app)
	w.Close("device")
	w.Close(role)
}

func (w *xw) queryAck(req *hl7.Message, code string, n int) {
	w.Open("queryAck")
	if req.QueryIDRoot != "" {
		w.Empty("queryId", "root", req.QueryIDRoot, "extension", req.QueryIDExt)
	}
	w.Empty("queryResponseCode", "code", code)
	w.Empty("resultTotalQuantity", "value", strconv.Itoa(n))
	w.Empty("resultCurrentQuantity", "value", strconv.Itoa(n))
	w.Empty("resultRemainingQuantity", "value", "0")
	w.Close("queryAck")
}

// medicationResponse renders a QURX_IN990113NL-like answer [P] with the
// patient's dispenses (none for an unknown patient: queryResponseCode NF).
func medicationResponse(req *hl7.Message, p *Patient, msgID string, now time.Time) []byte {
	w := &xw{}
	w.wrapper(hl7.QURXResponse, msgID, now, req, "AA", nil)
	w.Open("ControlActProcess", "moodCode", "EVN")
	w.Empty("code", "code", "QURX_TE990013NL", "codeSystem", hl7.OIDTrigger)
	var ds []Dispense
	if p != nil {
		ds = p.Dispenses
	}
	for _, d := range ds {
		w.Open("subject", "typeCode", "SUBJ", "contextConductionInd", "false")
		w.Open("MedicationDispenseEvent", "classCode", "SPLY", "moodCode", "EVN")
		w.Empty("id", "root", "2.16.528.1.1007.3.3."+d.PharmacyURA+".1.2", "extension", d.ID)
		w.Empty("code", "code", "373784005", "codeSystem", "2.16.840.1.113883.6.96", "displayName", "verstrekking")
		w.Empty("effectiveTime", "value", d.Date.Format("20060102"))
		w.Open("quantity", "value", strconv.Itoa(d.Quantity), "unit", "1")
		w.Empty("translation", "value", strconv.Itoa(d.Quantity), "code", "245", "codeSystem", "2.16.840.1.113883.2.4.4.1.900.2", "displayName", d.Drug.Form)
		w.Close("quantity")
		w.Open("subject")
		w.Open("Patient", "classCode", "PAT")
		w.Empty("id", "root", hl7.OIDBSN, "extension", p.BSN)
		w.Close("Patient")
		w.Close("subject")
		w.Open("product")
		w.Open("dispensedMedication", "classCode", "MANU")
		w.Open("MedicationKind", "classCode", "MMAT", "determinerCode", "KIND")
		w.Open("code", "code", d.Drug.HPK, "codeSystem", OIDHPK, "displayName", d.Drug.Name)
		w.Empty("translation", "code", d.Drug.PRK, "codeSystem", OIDPRK)
		w.Close("code")
		w.Text("name", d.Drug.Name)
		w.Close("MedicationKind")
		w.Close("dispensedMedication")
		w.Close("product")
		w.Open("responsibleParty")
		w.Open("assignedCareProvider", "classCode", "ASSIGNED")
		w.Open("representedOrganization", "classCode", "ORG", "determinerCode", "INSTANCE")
		w.Empty("id", "root", hl7.OIDURA, "extension", d.PharmacyURA)
		w.Text("name", d.Pharmacy)
		w.Close("representedOrganization")
		w.Close("assignedCareProvider")
		w.Close("responsibleParty")
		w.Open("component2")
		w.Open("dosageInstruction", "classCode", "SBADM", "moodCode", "RQO")
		w.Text("text", d.Dosage)
		w.Close("dosageInstruction")
		w.Close("component2")
		w.Close("MedicationDispenseEvent")
		w.Close("subject")
	}
	code := "OK"
	if len(ds) == 0 {
		code = "NF"
	}
	w.queryAck(req, code, len(ds))
	w.Close("ControlActProcess")
	w.Close(hl7.QURXResponse)
	return w.Bytes()
}

// genericResponse renders a GQZG_IN000002NL-like answer [P]: a summary
// organizer with the patient's episodes and recent dispenses.
func genericResponse(req *hl7.Message, p *Patient, msgID string, now time.Time) []byte {
	w := &xw{}
	w.wrapper(hl7.GQZGResponse, msgID, now, req, "AA", nil)
	w.Open("ControlActProcess", "moodCode", "EVN")
	n := 0
	if p != nil {
		w.Open("subject", "typeCode", "SUBJ")
		w.Open("organizer", "classCode", "CLUSTER", "moodCode", "EVN")
		w.Empty("code", "code", "PROFSUM", "codeSystem", "2.16.840.1.113883.2.4.3.11.60.66.10.3", "displayName", "Professionele samenvatting")
		w.Empty("statusCode", "code", "completed")
		w.Open("recordTarget")
		w.Open("patientRole")
		w.Empty("id", "root", hl7.OIDBSN, "extension", p.BSN)
		w.Open("patient")
		w.Text("name", p.Name)
		w.Empty("administrativeGenderCode", "code", p.Gender, "codeSystem", "2.16.840.1.113883.5.1")
		w.Empty("birthTime", "value", p.BirthDate)
		w.Close("patient")
		w.Close("patientRole")
		w.Close("recordTarget")
		for _, c := range p.Conditions {
			n++
			w.Open("component")
			w.Open("observation", "classCode", "OBS", "moodCode", "EVN")
			w.Empty("code", "code", "ES", "codeSystem", "2.16.840.1.113883.2.4.4.32.1", "displayName", "Episode")
			w.Open("effectiveTime")
			w.Empty("low", "value", c.Start.Format("20060102"))
			w.Close("effectiveTime")
			w.Empty("value", "code", c.Code, "codeSystem", OIDICPC, "displayName", c.Display)
			w.Close("observation")
			w.Close("component")
		}
		for _, d := range p.Dispenses {
			n++
			w.Open("component")
			w.Open("supply", "classCode", "SPLY", "moodCode", "EVN")
			w.Empty("id", "root", "2.16.528.1.1007.3.3."+d.PharmacyURA+".1.2", "extension", d.ID)
			w.Empty("effectiveTime", "value", d.Date.Format("20060102"))
			w.Empty("quantity", "value", strconv.Itoa(d.Quantity), "unit", "1")
			w.Open("product")
			w.Open("manufacturedProduct")
			w.Open("manufacturedMaterial")
			w.Empty("code", "code", d.Drug.HPK, "codeSystem", OIDHPK, "displayName", d.Drug.Name)
			w.Close("manufacturedMaterial")
			w.Close("manufacturedProduct")
			w.Close("product")
			w.Close("supply")
			w.Close("component")
		}
		w.Close("organizer")
		w.Close("subject")
	}
	code := "OK"
	if n == 0 {
		code = "NF"
	}
	w.queryAck(req, code, n)
	w.Close("ControlActProcess")
	w.Close(hl7.GQZGResponse)
	return w.Bytes()
}

// rejectAck renders an MCCI_IN000002NL application acknowledgement with
// typeCode AR, for a message the LSP does not route (for example an
// unsupported interaction).
func rejectAck(req *hl7.Message, msgID string, now time.Time, code, text string) []byte {
	w := &xw{}
	w.wrapper("MCCI_IN000002NL", msgID, now, req, "AR", []hl7.AckDetail{{TypeCode: "E", Code: code, CodeSystem: "2.16.840.1.113883.2.4.15.1", Text: text}})
	w.Close("MCCI_IN000002NL")
	return w.Bytes()
}
